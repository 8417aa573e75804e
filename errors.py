"""The one exception for problems a user can fix; each script shows it as one line and exits 1."""


class DetectError(Exception):
    """A problem the user can fix (bad input, missing weights, absent device); shown as one line."""
