"""The incident store: alerts grouped into incidents, and what each run's nodes already did.

Shared by the ingest node (writes alerts), the notify node (delivery memory and
notification state) and the receiver's journal (which borrows its engine).
"""
