"""tomocell.studies."""
