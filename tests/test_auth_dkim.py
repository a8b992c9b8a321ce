"""DKIM (RFC 6376): real signatures made here with dkimpy, keys served on loopback."""

from __future__ import annotations

from auth_support import check, dkim_key_fixture, dns_config, dns_fixture, envelope, message, sign  # noqa: F401

DOMAIN = "customer.example"


def publish(dns, key, domain=DOMAIN, selector="sel"):
    dns.set(f"{selector}._domainkey.{domain}", TXT=[key.record()])


def test_valid_signature_passes(make_config, dns, dkim_key):
    publish(dns, dkim_key)
    result = check(sign(message(), dkim_key, DOMAIN), envelope(), dns_config(make_config, dns))
    assert result.dkim == "pass"
    assert result.dkim_domains == (DOMAIN,)
    assert result.dkim_aligned  # d= is the From: domain


def test_altered_body_fails(make_config, dns, dkim_key):
    publish(dns, dkim_key)
    signed = sign(message(), dkim_key, DOMAIN)
    result = check(signed.replace(b"It burns.", b"It's fine."), envelope(), dns_config(make_config, dns))
    assert result.dkim == "fail" and result.dkim_domains == ()
    assert any("body hash mismatch" in r for r in result.reasons)


def test_altered_signed_header_fails(make_config, dns, dkim_key):
    publish(dns, dkim_key)
    signed = sign(message(), dkim_key, DOMAIN)
    assert check(signed.replace(b"Printer on fire", b"Pay this invoice"), envelope(), dns_config(make_config, dns)).dkim == "fail"


def test_unsigned_mail_is_none(make_config, dns):
    assert check(message(), envelope(), dns_config(make_config, dns)).dkim == "none"


def test_key_lookup_failure_is_temperror(make_config, dns, dkim_key):
    dns.servfail(f"sel._domainkey.{DOMAIN}")
    result = check(sign(message(), dkim_key, DOMAIN), envelope(), dns_config(make_config, dns))
    assert result.dkim == "temperror"
    assert not result.verified


def test_no_published_key_is_permerror(make_config, dns, dkim_key):
    assert check(sign(message(), dkim_key, DOMAIN), envelope(), dns_config(make_config, dns)).dkim == "permerror"


def test_best_signature_wins_and_each_domain_is_named(make_config, dns, dkim_key):
    # A mailing list's valid signature above the author's broken one.
    publish(dns, dkim_key)
    publish(dns, dkim_key, domain="lists.example.net")
    author = sign(message(), dkim_key, DOMAIN).replace(b"It burns.", b"It burns. [list footer]")
    relayed = sign(author, dkim_key, "lists.example.net")
    result = check(relayed, envelope(), dns_config(make_config, dns))
    assert result.dkim == "pass"
    assert result.dkim_domains == ("lists.example.net",)
    assert not result.dkim_aligned  # the list's domain is not the author's


def arc_sealed(raw: bytes, key, domain="lists.example.net") -> bytes:
    import dkim

    raw = f"Authentication-Results: {domain}; dkim=pass header.d={DOMAIN}\r\n".encode() + raw
    return b"".join(dkim.arc_sign(raw, b"sel", domain.encode(), key.private, domain.encode())) + raw


def test_arc_chain_is_recorded_not_trusted(make_config, dns, dkim_key):
    publish(dns, dkim_key, domain="lists.example.net")
    config = dns_config(make_config, dns)
    sealed = arc_sealed(message(), dkim_key)
    result = check(sealed, envelope(), config)
    assert result.arc == "pass"
    assert not result.verified  # a valid chain alone authenticates nobody
    assert check(sealed.replace(b"It burns.", b"It's fine."), envelope(), config).arc == "fail"
    assert check(message(), envelope(), config).arc == "none"


def test_arc_key_lookup_failure_is_temperror(make_config, dns, dkim_key):
    dns.timeout("sel._domainkey.lists.example.net")
    assert check(arc_sealed(message(), dkim_key), envelope(), dns_config(make_config, dns, timeout=0.3)).arc == "temperror"


def test_rsa_sha1_signature_is_not_accepted(make_config, dns, dkim_key):
    import dkim

    publish(dns, dkim_key)
    raw = message()
    signed = dkim.sign(raw, b"sel", DOMAIN.encode(), dkim_key.private, include_headers=[b"from", b"subject"], signature_algorithm=b"rsa-sha1") + raw
    result = check(signed, envelope(), dns_config(make_config, dns))
    assert result.dkim == "permerror" and result.dkim_domains == ()


def test_a_body_length_limit_vouches_for_nobody(make_config, dns, dkim_key):
    """RFC 6376 8.2: with l= anyone can append to a signed body; such a
    signature is "policy", never an aligned pass."""
    import dkim

    publish(dns, dkim_key)
    raw = message()
    sig = dkim.sign(raw, b"sel", DOMAIN.encode(), dkim_key.private, include_headers=[b"from", b"subject"], length=True)
    appended = sig + raw + b"P.S. Please pay the attached invoice to IBAN XX00.\r\n"
    result = check(appended, envelope(sender="x@evil.example"), dns_config(make_config, dns))
    assert result.dkim == "policy" and not result.dkim_aligned and not result.verified


def test_a_chain_of_too_many_arc_sets_is_not_looked_up(make_config, dns, dkim_key):
    raw = message()
    seals = b"".join(f"ARC-Seal: i={i}; a=rsa-sha256; cv=pass; d=evil.example; s=s{i}; b=AAAA\r\n".encode() for i in range(1, 30))
    result = check(seals + raw, envelope(), dns_config(make_config, dns))
    assert result.arc == "fail"
    assert not [q for q in dns.queries if "_domainkey.evil.example" in q[0]]


def test_signature_is_found_in_lf_mail_and_any_case(make_config, dns, dkim_key):
    """The unsigned fast path must not hide a signature dkimpy would read."""
    publish(dns, dkim_key)
    signed = sign(message(), dkim_key, DOMAIN)
    lf = signed.replace(b"\r\n", b"\n").replace(b"DKIM-Signature:", b"dkim-SIGNATURE:")
    assert check(lf, envelope(), dns_config(make_config, dns)).dkim == "pass"


def test_signature_text_in_the_body_only_is_none(make_config, dns):
    raw = message().replace(b"It burns.", b"It burns.\r\nDKIM-Signature: v=1; d=customer.example")
    assert check(raw, envelope(), dns_config(make_config, dns)).dkim == "none"


def test_header_block_ends_at_the_first_empty_line():
    from postdesk.auth.dkim import header_block

    assert header_block(b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore") == b"A: 1\r\nB: 2\r\n"
    assert header_block(b"A: 1\nB: 2\n\nbody") == b"A: 1\nB: 2\n"
    assert header_block(b"A: 1\r\nB: 2") == b"A: 1\r\nB: 2"  # no body: all of it
