"""Exchange feeds: one module per venue, a pure parser plus a thin connection shell."""
