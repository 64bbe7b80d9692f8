"""Shared helpers with no training in them: the command-line toolbox (``cli``), statistics
(``stats``), score tables and figures (``report``) and the results table of finished runs (``results``)."""
