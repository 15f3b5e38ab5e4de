"""The project's one error type: a problem with the learner's input, reported as one line."""


class UserError(Exception):
    """A problem with the learner's input: reported as one line, never as a traceback."""

    exit_code = 2


class AttackFailed(UserError):
    """The attack ran but did not find an adversarial image within its budget."""

    exit_code = 1
