"""Template tags of the payments app (the operators' dashboard)."""
