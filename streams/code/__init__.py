"""Code-change events: git commits to CodeChange records, the post-commit hook, and module documentation."""
