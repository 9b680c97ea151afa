"""The course kit: give an Arduino MKR WiFi 1010 an X.509 identity and connect it to the cloud.

The data flows one way through the modules: certs (pasted PEM to checked CSRs and certificates)
and config_h (the AWS sketch's configuration) first; later the board, the cloud, telemetry and
widgets build on them. Every error is a `kit.errors.KitError` whose message says what to do; in a
notebook it shows as that message, not as a traceback.
"""

from __future__ import annotations

__version__ = "0.1.0"
