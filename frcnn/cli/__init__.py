"""What the entry scripts share below them: command-line options turned into frozen values once."""
