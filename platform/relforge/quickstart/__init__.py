"""The quickstart: an embedded, generated data set and the suite that uses it."""
