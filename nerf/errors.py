"""Exception families a user can act on.

Each message names the file (or option) and the problem. CLIs catch `NerfError`, print the
message and exit with status 2.
"""


class NerfError(Exception):
    """Base class of every error the toolkit raises on purpose."""


class SceneError(NerfError):
    """A scene on disk is missing, malformed or inconsistent."""


class ConfigError(NerfError):
    """A configuration file or command-line option is invalid."""


class CheckpointError(NerfError):
    """A checkpoint or run directory cannot be used as asked."""


class ExportError(NerfError):
    """A mesh, point cloud, image or video cannot be exported as asked."""


class WeightsError(NerfError):
    """A super-resolution weight file has an unknown or inconsistent layout."""


class TrainingError(NerfError):
    """Training cannot continue (for example the loss became NaN or infinite)."""
