"""Pure KPI domain: lines, windows, grading, ticket and session state, contributions, codec."""
