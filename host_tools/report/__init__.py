"""Conformance evidence and the documents made from it: Table A.1 of TS 103 645 proved by a
test run (conformance, tablea1), the TS 103 701 ICS and IXIT (ics, ixit, codefacts), the CRA
and PSTI documents (cra), the published documents (published), every document of one report
(documents), what the evidence belongs to (provenance), SBOMs and advisories (sbom,
advisories, csaf)."""
