"""Team digests: periods, the digest of a team, the scan that records them, the routes."""
