"""Reporting: the scorecard and its formats (text, HTML, post), charts, comparison, vantage."""
