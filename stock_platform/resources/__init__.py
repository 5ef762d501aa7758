"""Resources shared by the domains; bound to environment variables only in definitions.py."""
