"""longlink.store"""
