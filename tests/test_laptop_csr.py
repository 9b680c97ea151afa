"""A CSR made on the laptop, with no chip: its signature verifies and the cloud issues a
certificate for it (what the signature does not prove), and nothing is left behind."""

from __future__ import annotations

import pytest

from kit import certs, laptop_csr
from kit.cloud.local import LocalCloud
from kit.errors import KitError


def test_a_laptop_made_csr_verifies_like_a_chips() -> None:
    csr = laptop_csr.make("laptop_0a1b")
    assert csr.common_name == "laptop_0a1b"
    assert certs.load_csr(csr.pem).public_key_der == csr.public_key_der  # its signature checks
    with pytest.raises(KitError):
        laptop_csr.make("two words")


@pytest.mark.timeout(60)
def test_the_cloud_issues_a_certificate_for_it_and_it_is_removed_again() -> None:
    with LocalCloud(port=0, ws_port=0) as cloud:
        before = cloud.things()
        proof = laptop_csr.register_and_remove(cloud)
        assert proof.thing.startswith("laptop_") and proof.certificate_id
        assert cloud.things() == before  # nothing left behind
        said = str(proof)
        assert "its signature is valid" in said and "not that a chip made it" in said
