"""CRC32C of a concatenation from the CRCs of its parts, without the bytes.

A record shard's header is rewritten after its samples and index are streamed, so a
writer that wants the CRC32C of the whole file knows the header's bytes last. With
`crc32c_combine(crc(A), crc(B), len(B)) == crc(A + B)` it CRCs the bytes as they leave
and prepends the header at the end, instead of reading the file back.

The method is zlib's `crc32_combine` (Mark Adler): appending len(B) zero bytes to A
multiplies A's CRC register by x^(8 len(B)) modulo the CRC polynomial, and the CRC
is linear, so the result XORs with B's CRC. Polynomials are bit-reflected, as the CRC
register holds them: bit 31 is x^0.
"""

from __future__ import annotations

__all__ = ["crc32c_combine"]

_POLY = 0x82F63B78  # CRC-32C (Castagnoli), reflected
_X0 = 1 << 31  # the polynomial 1 (x^0), reflected


def _multiply(a: int, b: int) -> int:
    """a(x) * b(x) modulo the CRC polynomial."""
    product = 0
    for bit in range(31, -1, -1):  # a's terms from x^0 (bit 31) up
        if a & (1 << bit):
            product ^= b
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1  # b *= x
    return product


def _powers() -> tuple[int, ...]:
    """x^(2^k) modulo the polynomial for k = 0..63 (repeated squaring of x)."""
    table = [_X0 >> 1]  # x^1
    for _ in range(63):
        table.append(_multiply(table[-1], table[-1]))
    return tuple(table)


_X_TO_2_TO = _powers()


def _x_to_8n(n: int) -> int:
    """x^(8n) modulo the polynomial: the shift of n zero bytes (n < 2^61)."""
    power = _X0
    for k in range(3, len(_X_TO_2_TO)):  # 8n = n * 2^3: bit i of n is x^(2^(i + 3))
        if not n:
            break
        if n & 1:
            power = _multiply(_X_TO_2_TO[k], power)
        n >>= 1
    return power


def crc32c_combine(crc_a: int, crc_b: int, length_b: int) -> int:
    """CRC32C of A + B, given crc32c(A), crc32c(B) and len(B)."""
    if not 0 <= length_b < 1 << 61:
        raise ValueError(f"length_b must be in [0, 2^61), not {length_b}")
    return _multiply(_x_to_8n(length_b), crc_a) ^ crc_b
