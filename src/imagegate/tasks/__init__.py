"""The persisted task runner: in-process workers that claim async tasks from the database with a lease."""
