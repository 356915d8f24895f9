"""The one error class for input a user can fix.

Anything raised as `HarnessError` is an expected failure (a missing file, a malformed
diff, a topology that does not divide): the CLI prints its message as one sentence and
exits 2. Every other exception is a bug in the harness and keeps its traceback.
"""


class HarnessError(Exception):
    """Bad input: the message is a complete sentence naming the input and the reason."""
