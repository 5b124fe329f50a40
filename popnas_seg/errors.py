class UserError(Exception):
    """A problem the user can fix (config, paths, data): exit code 2, no traceback."""
