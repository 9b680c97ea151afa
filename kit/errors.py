"""Every error the kit raises, in one hierarchy.

A message says what happened and what to do next, in words a student can act on in a noisy
classroom. Library code raises these and never prints; the CLI and the notebooks present them.
"""

from __future__ import annotations

from pathlib import Path

from kit.printable import mark_commands, printable


class KitError(Exception):
    """Something the student can fix; the message says how."""

    title = "Problem"
    # A message is one paragraph; an error that quotes a tool's output lines keeps its breaks.
    keeps_line_breaks = False

    def __str__(self) -> str:
        """The message, with anything a terminal would obey (escapes, line breaks) made visible."""
        # Messages quote what people typed and what certificates hold; neither may forge lines.
        return printable(super().__str__(), keep="\n" if self.keeps_line_breaks else "")

    def _render_traceback_(self) -> list[str]:
        """What IPython shows instead of a traceback: the kind of problem, then the message."""
        # A student needs the sentence that says what to do, not the kit's internals.
        return [f"\x1b[1;31m{self.title}\x1b[0m", mark_commands(str(self), "\x1b[1m", "\x1b[22m")]


class UsageError(KitError):
    """A `kit` command line the parser cannot read (unknown option, missing or bad value)."""

    title = "Command problem"


class SettingsError(KitError):
    """A course setting (board, cloud, profile, region, interval) that cannot be used."""

    title = "Settings problem"


class FileError(KitError):
    """A file named on the command line that cannot be read, or a place that cannot be written."""

    title = "File problem"


# Pasted text and certificates (kit.pem, kit.certs)


class PemError(KitError):
    """Pasted text that is not one clean PEM block of the expected kind."""

    title = "Pasted text problem"


class NotPemError(PemError):
    """Nothing in the text looks like a PEM block."""


class TruncatedPemError(PemError):
    """A BEGIN line without its END line, or the reverse."""


class MultiplePemError(PemError):
    """More than one PEM block where one was expected."""


class WrongPemKindError(PemError):
    """A certificate where a CSR was expected, or the reverse."""


class PasteTooLongError(PemError):
    """Far more text than one CSR or certificate: the wrong file, or a whole scroll-back."""


class PrivateKeyPastedError(PemError):
    """A private key was pasted; it must never be shared."""


class Base64Error(PemError):
    """The body of the block is not valid base64."""


class CertificateError(KitError):
    """The block decodes but is not a well-formed CSR or certificate."""

    title = "Certificate problem"


class SignatureError(CertificateError):
    """The signature does not match the content (a character changed while copying)."""


class DeviceNameError(KitError):
    """A device name that cannot be a certificate CN, MQTT client id, thing name and topic level."""

    title = "Device name problem"


# config.h (kit.config_h)


class ConfigError(KitError):
    """A value that cannot go into config.h, or a config.h that cannot be read back."""

    title = "config.h problem"


# The data directory (kit.places)


class DataDirError(KitError):
    """The kit's data directory is missing, foreign, or from another kit version."""

    title = "Data folder problem"


class DamagedFileError(DataDirError):
    """A file in the data folder that the kit cannot read (cut short, edited, or not its own).

    `target` is what `kit doctor --repair` sets aside: the file, or a device's whole folder.
    """

    def __init__(self, message: str, target: Path) -> None:
        super().__init__(message)
        self.target = target


# Boards and the serial CSR dialog (kit.board)


class BoardError(KitError):
    """Finding, opening or talking to a board failed."""

    title = "Board problem"


class NoBoardError(BoardError):
    """No board is attached (and no virtual board runs)."""


class SeveralBoardsError(BoardError):
    """More than one board, and nothing says which one to use."""


class BootloaderModeError(BoardError):
    """The board is in bootloader mode (reset was double-tapped)."""


class UnsupportedBoardError(BoardError):
    """An Arduino board the AWS sketch does not support."""


class PortBusyError(BoardError):
    """Another program (often the Serial Monitor) has the port open."""


class PortPermissionError(BoardError):
    """The operating system does not let this user open the port."""


class BoardDisconnectedError(BoardError):
    """The port vanished: the board was unplugged or reset away."""


class BoardSilentError(BoardError):
    """The board said nothing (or stopped talking) within the time allowed."""


class NoChipError(BoardError):
    """The sketch found no ECCX08 crypto chip."""


class ChipNotLockedError(BoardError):
    """The chip is not locked and the person did not choose to lock it."""


class LockFailedError(BoardError):
    """Writing or locking the chip's configuration failed."""


class CsrGenerationError(BoardError):
    """The chip could not make the key or the CSR."""


class GarbledCsrError(BoardError):
    """The CSR arrived damaged or incomplete."""


class UnexpectedOutputError(BoardError):
    """The board printed something the CSR dialog does not contain (wrong sketch?)."""


# Clouds (kit.cloud)


class CloudError(KitError):
    """Registering, listing or removing things failed, or the broker cannot run."""

    title = "Cloud problem"


class ThingTakenError(CloudError):
    """The thing name is already bound to another key."""


class KeyMismatchError(CloudError):
    """The certificate the cloud returned does not carry the CSR's key."""


class BrokerNotRunningError(CloudError):
    """The local broker is not running."""


class PortInUseError(CloudError):
    """The broker's port is taken by another program."""


class AwsError(CloudError):
    """AWS refused or could not be reached; the message names the cause and the fix."""


class MqttProtocolError(CloudError):
    """A client broke MQTT, the policy or the cloud's limits; the broker closes its connection.

    `reason` is the disconnect reason AWS IoT reports in its lifecycle event for the same case.
    """

    def __init__(self, message: str, reason: str = "CLIENT_ERROR") -> None:
        super().__init__(message)
        self.reason = reason


# Devices, the virtual board, watching and flashing


class TelemetryError(KitError):
    """Watching or commanding devices failed."""

    title = "Telemetry problem"


class ArduinoError(KitError):
    """arduino-cli is missing or failed; the message says why and what to do."""

    title = "Arduino problem"
    keeps_line_breaks = True  # the compiler's error lines


class DeviceNotFoundError(KitError):
    """No record for the device asked for."""

    title = "Device problem"


class VirtualBoardError(KitError):
    """A virtual board could not be started, found or stopped."""

    title = "Virtual board problem"


class ChipError(KitError):
    """The virtual chip refused an operation (as a real one would return 0)."""


class NotFoundError(AwsError):
    """The thing, certificate or policy does not exist."""


# The class server (kit.classroom)


class ClassError(KitError):
    """The class (its accounts, roster or store) cannot do what was asked."""

    title = "Class problem"


class RosterError(ClassError):
    """A roster file that cannot be read; the message names the line."""

    title = "Roster problem"
