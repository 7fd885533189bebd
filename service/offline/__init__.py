"""The offline path: recorded-file readers, the backtest and its plots."""
