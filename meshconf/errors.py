"""User-facing errors.

Every problem a user can cause (a missing file, a wrong argument, a model file of the wrong kind) is raised as a
`MeshconfError`, whose message is one line that names the file or argument and says what to do. The command line
prints that line and exits with status 2 instead of showing a traceback.
"""


class MeshconfError(Exception):
    """A problem with the user's input or files, explained in one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class MissingFiles(MeshconfError):
    """Model files are missing (and could not be fetched): exit status 1, as `meshconf doctor` uses, with one line
    per missing file."""

    exit_code = 1

    def __init__(self, lines: list[str]):
        self.lines = [" ".join(str(line).split()) for line in lines]
        Exception.__init__(self, "\n".join(self.lines))
