"""Quarterly appraisals: the pure rule, their SQL, the appraiser, routes and exports."""
