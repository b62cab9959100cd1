"""Pure KPI domain: lines, windows, grading, ticket/session state, contributions, applying."""
