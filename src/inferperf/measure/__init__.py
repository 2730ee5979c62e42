"""inferperf.measure"""
