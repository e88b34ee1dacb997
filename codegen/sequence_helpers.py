"""The compiled helpers that sequence ops lower to, as module text: the check that X holds
token ids before an embedding indexes its table with them (numba does not check bounds, so an
id out of range would read another array's memory: a silently wrong number)."""
from __future__ import annotations

SEQUENCE_HELPERS = {
    "_token_ids": '''
@jit
def _token_ids(X, rows):
    """Every X[n, t] must be a token id, a whole number from 0 to rows - 1 (a row of the table)."""
    for n in range(X.shape[0]):
        for t in range(X.shape[1]):
            v = X[n, t]
            if not (v >= 0 and v < rows and v == np.floor(v)):
                raise ValueError("X holds token ids, whole numbers from 0 to V-1 (the rows of the table they "
                                 "pick); an element of X is not one")
''',
}
