"""The one exception for problems a user can fix, in detecting, evaluating, training or exporting alike; each script
shows it as one line and exits 1."""


class FrcnnError(Exception):
    """A problem the user can fix (bad input, missing weights, a bad data set, an absent device); shown as one line."""


# The name it had while only the detect scripts raised it; kept so code that catches it goes on working.
DetectError = FrcnnError


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (libraries' messages often run to many lines)."""
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
