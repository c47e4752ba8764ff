"""The one exception class for bad input: a user's file, flag, factory or model that pathpatch cannot use.

Raised with one line that names the offending value, where it came from and the fix; the command line
prints that line and exits 2. Any other exception reaching the top is pathpatch's own bug (exit 3).
It subclasses ``ValueError``, ``TypeError`` and ``KeyError`` so library callers that catch the built-in
kinds (a bad value, a wrong type, an unknown name) keep catching it.
"""


class InputError(ValueError, TypeError, KeyError):
    """Bad input, explained in one line (exit 2 on the command line)."""

    __str__ = BaseException.__str__  # KeyError would quote the message


def listed(items, most: int = 5, show=str) -> str:
    """``items`` as text for a message: all of them joined by commas, or the first ``most`` and how many more
    (a list of thousands of tokens stays one readable line). ``show`` writes one item.

    >>> listed([1, 2, 3])
    '1, 2, 3'
    >>> listed(range(100), most=3)
    '0, 1, 2 and 97 more'
    """
    items = list(items)
    shown = ", ".join(show(item) for item in items[:most])
    return f"{shown} and {len(items) - most} more" if len(items) > most else shown
