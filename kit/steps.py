"""The course's steps with their effects on this computer, shared by notebooks and `kit`.

A cloud registers and removes devices and nothing else; a step also keeps the device record in
the data folder and says when the current device changes. A class server registering a room of
students calls the cloud, not these steps, so nothing lands in the instructor's data folder.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from kit import devices, settings
from kit.certs import Csr
from kit.cloud import Cloud, Registration
from kit.errors import DamagedFileError, DeviceNotFoundError


@dataclass(frozen=True)
class Registered:
    """A registration, the device record it left, and the current device before it."""

    registration: Registration
    record: devices.DeviceRecord
    previous_current: str | None

    @property
    def became_current(self) -> bool:
        """Whether registering changed which device the course works with."""
        return self.previous_current != self.record.thing


def register(
    cloud: Cloud, csr: Csr, *, slot: int | None = None, board: str = "", chip_serial: str = ""
) -> Registered:
    """Register `csr` in `cloud`, keep the device record and make it the current device.

    What the record already says (slot, board, chip) is kept unless given again.
    """
    registration = cloud.register(csr)
    try:
        known: devices.DeviceRecord | None = devices.load(registration.thing)
    except (DeviceNotFoundError, DamagedFileError):
        known = None  # a damaged record is set aside when the new one is saved
    if known is not None:
        slot = known.slot if slot is None else slot
        board, chip_serial = board or known.board, chip_serial or known.chip_serial
    try:
        previous = settings.current_device()
    except DamagedFileError:
        previous = None
    record = devices.save(
        devices.DeviceRecord(
            thing=registration.thing,
            cloud=cloud.name,
            broker_host=registration.broker_host,
            broker_port=registration.broker_port,
            certificate_id=registration.certificate_id,
            slot=slot or 0,
            board=board,
            chip_serial=chip_serial,
            **cloud.record_extras(),
        ),
        csr.pem,
        registration.certificate_pem,
        registration.ca_pem,
    )
    return Registered(registration, record, previous)


def unregister(cloud: Cloud, thing: str) -> None:
    """Remove `thing` from `cloud`, then its record on this computer."""
    cloud.unregister(thing)
    with contextlib.suppress(OSError, DeviceNotFoundError):
        devices.forget(thing)
