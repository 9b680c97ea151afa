"""Write sketches/AWS/amazon_trust_anchors.h from the Amazon roots the kit ships.

Run it after changing kit/AmazonRootCAs.pem; a test fails while the header and the PEM differ.
"""

from __future__ import annotations

from pathlib import Path

from kit import bearssl_anchors

if __name__ == "__main__":
    path = Path(bearssl_anchors.amazon_header_path())
    path.write_text(bearssl_anchors.amazon_header(), encoding="ascii")
    print(f"wrote {path}")
