"""Run directories: layout, atomic writes, loading back."""
