"""tomocell.physics."""
