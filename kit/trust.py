"""Amazon Root CA 1: the CA behind AWS IoT's ATS endpoints, built into the board's TLS library.

It sits at the bottom of the kit because both sides need it: the AWS cloud hands it to devices
when they register, and the virtual board trusts it as the real firmware does.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def amazon_root_ca_file() -> Path:
    """The file that holds Amazon Root CA 1 (shipped inside the package)."""
    return Path(str(resources.files("kit").joinpath("AmazonRootCA1.pem")))


def amazon_root_ca() -> str:
    """Amazon Root CA 1 in PEM."""
    return amazon_root_ca_file().read_text(encoding="ascii")
