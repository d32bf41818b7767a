"""The end-to-end lab: a fleet of handsets on 2G links, customers with meters, a platform."""
