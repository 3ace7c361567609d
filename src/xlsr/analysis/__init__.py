"""Analysis of the quantizer's discrete units: codeword usage per language, sharing, similarity, plots."""

from xlsr.analysis.run import AnalysisReport, analyze, format_summary

__all__ = ["AnalysisReport", "analyze", "format_summary"]
