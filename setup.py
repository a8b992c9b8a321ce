"""Packaging for postdesk: a help desk that runs inside the company's Postfix."""

from setuptools import find_packages, setup

setup(
    name="postdesk",
    version="0.1.0",
    description="An email help desk that lives inside Postfix: milter, pipe filter, ticket store and notifier",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.11",
    packages=find_packages(include=["postdesk", "postdesk.*"]),
    package_data={
        "postdesk.store": ["migrations/*.py", "migrations/versions/*.py"],
        "postdesk": ["templates/*/*.subject", "templates/*/*.txt", "templates/*/*.html"],
    },
    install_requires=[
        "pymilter>=1.0.5",
        "dnspython>=2.3",
        "sqlalchemy>=2.0",
        "schedule>=1.2",
        "alembic>=1.12",
        # Sender authentication (postdesk.auth): DKIM/ARC, SPF, RFC 8601
        # Authentication-Results, organisational domains for DMARC.
        "dkimpy>=1.1",
        "pyspf>=2.0.14",
        "authres>=1.2",
        "publicsuffixlist>=1.0",
        "flufl.bounce>=4.0",  # non-standard bounce formats (postdesk.filter.rules.bounce)
        "aiosmtpd>=1.4",  # postdesk lmtp: the resident after-queue path (its LMTP server)
        "nh3>=0.2",  # sanitising HTML mail (ammonia's rules: no script, handlers, forms, remote loads)
        "charset-normalizer>=3.0",  # guessing the charset of raw 8-bit headers and unlabelled bodies
        "tnefparse>=1.4",  # unpacking Outlook's winmail.dat (application/ms-tnef) into its files
        "jinja2>=3.1",  # the mail templates, in its sandbox (postdesk.notifier.templates)
    ],
    extras_require={
        "pg": ["psycopg[binary]>=3.1"],
        "bench": ["py-spy>=0.3"],  # bench/milter.py --profile
        "test": ["pytest>=7", "dnslib>=0.9.24", "hypothesis>=6.100", "mypy>=1.10", "ruff>=0.5"],
    },
    entry_points={"console_scripts": ["postdesk = postdesk.cli:main"]},
)
