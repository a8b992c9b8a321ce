"""Driving the milter under ``Milter.testctx.TestCtx`` (pymilter 1.0.5).

TestCtx stops at the first NOREPLY it sees unless the MTA side offers no
"no reply" bits; ``fresh_opts`` (import it into a test module: it is
autouse there) makes it such an MTA, so our @noreply callbacks must answer
CONTINUE, and resets the factory afterwards.
"""

from __future__ import annotations

import Milter
import pytest
from Milter import testctx

NR_BITS = Milter.P_NR_CONN | Milter.P_NR_HELO | Milter.P_NR_MAIL | Milter.P_NR_RCPT | Milter.P_NR_DATA | Milter.P_NR_UNKN | Milter.P_NR_EOH | Milter.P_NR_BODY | Milter.P_NR_HDR


@pytest.fixture(autouse=True)
def fresh_opts(monkeypatch):
    monkeypatch.setattr(testctx.TestCtx, "default_opts", [Milter.CURR_ACTS, 0x1FFFFF & ~NR_BITS, 0, 0])
    yield
    Milter.factory = Milter.Milter
