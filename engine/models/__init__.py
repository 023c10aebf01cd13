"""The model manager: which models exist on this machine, what their files hold, fetching and removing them,
the recommended list and its memory table (`uprez models ...`)."""
