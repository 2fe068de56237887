"""The code's shape, measured (``make shape``): layer contracts, lines per package, the
longest functions, and the repeated blocks the ``duplicates`` tool reports.  Rerunnable by
anyone; a closing note quotes its output before and after a redesign."""
