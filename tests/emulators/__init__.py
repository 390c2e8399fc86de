"""Local emulators of cloud APIs for tests: they bind 127.0.0.1 on a free port and speak the real wire
formats (see /work/shared/reference/providers.md)."""
