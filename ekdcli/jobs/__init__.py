"""The work behind each command, as plain functions of a resolved Config (importable without click)."""
