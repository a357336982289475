"""The one error type of the ROUGE suite: bad input from the user, printed as one ``error:`` line."""


class SuiteError(ValueError):
    """A missing file, unknown column or split, empty data, a bad length or tokenizer."""
