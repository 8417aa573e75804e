"""The one exception for problems a user can fix; each script shows it as one line and exits 1."""


class DetectError(Exception):
    """A problem the user can fix (bad input, missing weights, absent device); shown as one line."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (libraries' messages often run to many lines)."""
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
