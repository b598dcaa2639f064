"""The ground floor every stage may import: errors, atomic writes, torch set-up, the version."""
