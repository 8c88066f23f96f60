"""Analysis figures of trained models (LoDa Figs. 6 and 7: ``python -m iqa.analysis.features``)."""
