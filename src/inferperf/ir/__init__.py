"""inferperf.ir"""
