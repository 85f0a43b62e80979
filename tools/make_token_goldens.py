"""Golden token ids from Python `tokenizers` for a seeded set of multilingual strings.

The engine tokenizes with the Rust `tokenizers` crate; this file pins what the Python
library (the one sentence-transformers uses) produces for the same tokenizer.json, so the
two can be compared id for id, including pair templates and truncation.

Usage:

    python tools/make_token_goldens.py --tokenizer /work/shared/assets/xlmr-tokenizer.json \
        --out tests/fixtures/xlmr_token_goldens.jsonl [--seed 0] [--singles 2400] [--pairs 2400]

Output, one JSON object per line:

    {"kind": "single", "text": s, "ids": [...]}
        ids = encode(s, add_special_tokens=False)
    {"kind": "pair", "query": a, "document": b, "max_length": N or null, "ids": [...]}
        ids = encode(a, b) with the pair template <s> A </s></s> B </s>; with N,
        truncation longest_first at N (N covers: no cut, cutting only the longer side,
        cutting both sides, and tiny N = 4..12)

Strings cover affiliation-like text in many scripts (Latin with diacritics, Cyrillic, Greek,
CJK, kana, Hangul, Arabic, Hebrew, Devanagari, Thai, ...), emoji (flags, ZWJ, skin tones),
full-width and compatibility characters that NFKC rewrites, combining marks, odd whitespace
(tabs, newlines, NBSP, ideographic space, zero-width characters, U+2028), punctuation runs,
digits in several scripts, literal special-token text ("<s>", "</s>", "<mask>"), control
characters, empty and very long strings.

U+2028, U+2029 and U+0085 are written escaped so that line-based readers never split a line.

Requirements:

    pip install torch transformers==5.24.0 tokenizers safetensors numpy
    (only `tokenizers` and `numpy` are used here)
"""

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gte_reference as ref  # noqa: E402

# --------------------------------------------------------------------------------------
# Material
# --------------------------------------------------------------------------------------

DEPARTMENTS = [
    "Department of Physics", "Dept. of Chemistry", "School of Medicine", "Faculty of Law",
    "Institute for Theoretical Physics", "Laboratoire de Physique des Solides", "Institut für Informatik",
    "Dipartimento di Ingegneria", "Departamento de Biología Molecular", "Faculdade de Ciências",
    "Afdeling Neurologie", "Zakład Fizyki Jądrowej", "Katedra Matematiki", "Úřad pro vědu",
    "Département d'Économie", "Institutionen för fysik", "Wydział Chemii", "Kémiai Intézet",
    "Факультет вычислительной математики", "Кафедра физики", "Інститут фізики",
    "Τμήμα Φυσικής", "物理学系", "计算机科学与技术系", "医学部附属病院", "大学院工学研究科",
    "물리학과", "의과대학", "قسم الكيمياء", "كلية الهندسة", "המחלקה לפיזיקה", "रसायन विज्ञान विभाग",
    "ภาควิชาฟิสิกส์", "ფიზიკის ფაკულტეტი", "Khoa Vật lý", "Bölüm Fizik", "Fakultas Kedokteran",
]

INSTITUTIONS = [
    "University of Tokyo", "Univ. of Oxford", "Massachusetts Institute of Technology", "ETH Zürich",
    "Université Paris-Saclay", "Ludwig-Maximilians-Universität München", "Università di Bologna",
    "Universidad Nacional Autónoma de México", "Universidade de São Paulo", "Uniwersytet Jagielloński",
    "Univerzita Karlova", "Københavns Universitet", "Háskóli Íslands", "Norges teknisk-naturvitenskapelige universitet",
    "Karolinska Institutet", "Max-Planck-Institut für Quantenoptik", "CNRS", "INSERM U1016", "CERN",
    "Московский государственный университет", "Санкт-Петербургский государственный университет",
    "Київський національний університет", "Εθνικό Μετσόβιο Πολυτεχνείο", "北京大学", "清华大学",
    "中国科学院物理研究所", "香港中文大學", "國立臺灣大學", "東京大学", "京都大学", "理化学研究所",
    "カリフォルニア大学", "서울대학교", "한국과학기술원", "연세대학교", "جامعة الملك سعود", "جامعة القاهرة",
    "האוניברסיטה העברית בירושלים", "הטכניון – מכון טכנולוגי לישראל", "भारतीय प्रौद्योगिकी संस्थान दिल्ली",
    "जवाहरलाल नेहरू विश्वविद्यालय", "মহিদল বিশ্ববিদ্যালয়", "จุฬาลงกรณ์มหาวิทยาลัย", "მიხეილ ჯავახიშვილის სახელობის თბილისის სახელმწიფო უნივერსიტეტი",
    "Երևանի պետական համալսարան", "Đại học Quốc gia Hà Nội", "İstanbul Teknik Üniversitesi",
    "Universitas Indonesia", "Universiti Malaya", "አዲስ አበባ ዩኒቨርሲቲ", "சென்னை பல்கலைக்கழகம்",
    "Massachusetts General Hospital", "Hôpital Necker–Enfants Malades", "Charité – Universitätsmedizin Berlin",
    "Siemens AG", "Google DeepMind", "Microsoft Research Asia", "Samsung Electronics Co., Ltd.",
]

CITIES = [
    "Tokyo", "Paris", "München", "Zürich", "São Paulo", "Kraków", "Łódź", "Praha", "Bogotá", "México, D.F.",
    "Москва", "Київ", "Αθήνα", "北京", "上海", "東京都文京区", "서울", "القاهرة", "الرياض", "ירושלים",
    "नई दिल्ली", "กรุงเทพมหานคร", "Hà Nội", "İstanbul", "Reykjavík", "Tromsø", "Malmö", "Genève",
]

COUNTRIES = [
    "Japan", "France", "Germany", "Switzerland", "Brazil", "Poland", "Czech Republic", "Colombia", "México",
    "Россия", "Україна", "Ελλάδα", "中国", "日本", "대한민국", "مصر", "المملكة العربية السعودية",
    "ישראל", "भारत", "ประเทศไทย", "Việt Nam", "Türkiye", "Ísland", "Norge", "Sverige", "USA", "U.K.",
]

POSTCODES = [
    "75015", "100084", "113-0033", "CB2 0QH", "H3T 1J4", "80333", "8092", "02-097", "04510-000",
    "119991", "EC1V 9LF", "〒606-8501", "١٢٣٤٥", "११००१६", "１１３－８６５４", "10330", "No. 5",
]

EMOJI = [
    "🎓", "🏥", "🔬", "🧪", "🇯🇵", "🇫🇷", "🇨🇦", "👩‍🔬", "👨🏽‍⚕️", "❤️", "👍🏽", "🏳️‍🌈", "☕", "✨", "💊", "🧬", "⚛️",
]

# Characters NFKC (the Precompiled charsmap) rewrites, or that are otherwise unusual.
COMPAT = [
    "ＵＮＩＶＥＲＳＩＴＹ", "Ｔｏｋｙｏ", "１２３", "ｱｲｳｴｵ", "ｶﾞｷﾞ", "ﬁ", "ﬂ", "ﬃ", "Ⅳ", "ⅻ", "①", "⑳", "㈱",
    "㍻", "㎞", "㎏", "ℌ", "ℕ", "µ", "½", "¾", "™", "²", "³", "Å", "Ω", "K", "ǅ", "ſ", "ｈｔｔｐ", "（株）",
    "【研究所】", "「東京」", "〜", "～", "・", "･", "︰", "︵", "ﾟ", "ㄱ", "ᄀ", "ﾡ",
]

COMBINING = [
    "e\u0301", "a\u0308", "n\u0303", "o\u0302\u0323", "u\u031b\u0300", "z\u030c", "c\u0327", "i\u0307",
    "\u0301", "A\u030a", "\u0915\u093c", "\u05e9\u05c1", "\u0627\u064e", "\u0e01\u0e34\u0e4a",
    "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f",
]

WHITESPACE = [
    " ", "  ", "   ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u2002", "\u2003", "\u2009", "\u202f", "\u3000",
    "\u200b", "\u200c", "\u200d", "\ufeff", "\u2028", "\u2029", "\u0085", "\u000b", "\u000c",
]

PUNCT = [
    "...", "…", "!!!", "?!", "---", "—", "–", "-", "((", "))", "[", "]", "{", "}", "«", "»", "“", "”", "„",
    "‘", "’", "'", '"', "•", "·", "§", "¶", "/", "\\", "|", "@", "#", "&", "&amp;", "©", "®", ";", ";;;",
    ":", "::", "~~~", "***", "%", "‰", "+", "=", "<", ">", "^", "_", "`", "、", "。", "，", "：", "؛", "،",
    "؟", "।", "॥", "๏", "։", "፡",
]

DIGITS = [
    "0", "7", "42", "2019", "2019–2021", "3.14159", "1,000,000", "1.000.000,50", "+81-3-5841-4111",
    "٣٤٥", "۱۲۳", "१२३", "১২৩", "௧௨௩", "๑๒๓", "１２３", "⁰¹²", "₁₂₃", "0x1F", "1e-12", "-273.15",
]

SPECIAL_LITERALS = [
    "<s>", "</s>", "<mask>", "<pad>", "<unk>", "<s></s>", "a<mask>b", " <mask> ", "<mask><mask>", "x</s>y",
    "<S>", "< s >", "<s", "s>", "</s", "<<s>>", "<mask >", "<mask>.", "Univ.<mask>of Tokyo",
]

CONTROL = ["\x00", "\x01", "\x07", "\x1b", "\x7f", "\u200e", "\u200f", "\u202a", "\u202e", "\u2066", "\ue000", "\U000f0000"]

WORDS = (
    "university institute department laboratory hospital centre center research national school faculty "
    "college medical science technology engineering physics chemistry biology street avenue road campus "
    "division unit program graduate clinical foundation society academy ministry company limited inc corp "
    "gmbh sarl spa ltd ag co llc universität université università universidad universidade instituto "
    "institut laboratoire hôpital krankenhaus klinikum straße rue via calle avenida rua ulica ulitsa"
).split()

UNICODE_BLOCKS = [
    (0x0020, 0x007E), (0x00A0, 0x024F), (0x0300, 0x036F), (0x0370, 0x03FF), (0x0400, 0x04FF),
    (0x0530, 0x058F), (0x0590, 0x05FF), (0x0600, 0x06FF), (0x0900, 0x097F), (0x0980, 0x09FF),
    (0x0E00, 0x0E7F), (0x10A0, 0x10FF), (0x1100, 0x11FF), (0x1E00, 0x1EFF), (0x2000, 0x206F),
    (0x2100, 0x218F), (0x2190, 0x21FF), (0x2460, 0x24FF), (0x3000, 0x30FF), (0x3130, 0x318F),
    (0x3200, 0x33FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xF900, 0xFAFF), (0xFB00, 0xFB4F),
    (0xFE30, 0xFE4F), (0xFF00, 0xFFEF), (0x1F300, 0x1F6FF), (0x1F900, 0x1F9FF), (0x20000, 0x2A6DF),
]


class Gen:
    """Seeded string generator."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def chance(self, p):
        return self.rng.random() < p

    def affiliation(self):
        """An affiliation line: department, institution, street, postcode, city, country."""
        parts = []
        if self.chance(0.7):
            parts.append(self.pick(DEPARTMENTS))
        parts.append(self.pick(INSTITUTIONS))
        if self.chance(0.3):
            parts.append(f"{int(self.rng.integers(1, 300))} {self.pick(WORDS).title()} {self.pick(['Street', 'Str.', 'rue', 'Ave', 'ul.', 'улица'])}")
        city = self.pick(CITIES)
        if self.chance(0.5):
            city = f"{self.pick(POSTCODES)} {city}" if self.chance(0.5) else f"{city} {self.pick(POSTCODES)}"
        parts.append(city)
        if self.chance(0.8):
            parts.append(self.pick(COUNTRIES))
        sep = self.pick([", ", ", ", ", ", "; ", " , ", ",", " - ", "، ", "、", "\t", "\n"])
        text = sep.join(parts)
        if self.chance(0.15):
            text = self.decorate(text)
        if self.chance(0.1):
            text = text.upper() if self.chance(0.5) else text.lower()
        return text

    def decorate(self, text):
        """Insert odd material (emoji, compat chars, whitespace, ...) at random places."""
        pools = [EMOJI, COMPAT, COMBINING, WHITESPACE, PUNCT, DIGITS, SPECIAL_LITERALS, CONTROL]
        for _ in range(int(self.rng.integers(1, 4))):
            pos = int(self.rng.integers(0, len(text) + 1))
            text = text[:pos] + self.pick(self.pick(pools)) + text[pos:]
        return text

    def soup(self):
        """Tokens drawn from every pool, joined by random separators."""
        pools = [DEPARTMENTS, INSTITUTIONS, CITIES, COUNTRIES, POSTCODES, EMOJI, COMPAT, COMBINING,
                 PUNCT, DIGITS, SPECIAL_LITERALS, WORDS, WORDS]
        n = int(self.rng.integers(1, 12))
        out = []
        for _ in range(n):
            out.append(self.pick(self.pick(pools)))
            out.append(self.pick(WHITESPACE + [" "] * 20 + ["", ",", ", "]))
        return "".join(out)

    def codepoints(self):
        """Random characters from selected Unicode blocks (no surrogates)."""
        n = int(self.rng.integers(1, 40))
        chars = []
        for _ in range(n):
            lo, hi = self.pick(UNICODE_BLOCKS)
            chars.append(chr(int(self.rng.integers(lo, hi + 1))))
            if self.chance(0.2):
                chars.append(" ")
        return "".join(chars)

    def long_text(self, n_chars):
        parts = []
        size = 0
        while size < n_chars:
            s = self.pick([self.affiliation, self.affiliation, self.soup, self.codepoints])()
            parts.append(s)
            size += len(s) + 2
        return "; ".join(parts)[:n_chars]

    def text(self):
        r = self.rng.random()
        if r < 0.45:
            return self.affiliation()
        if r < 0.70:
            return self.soup()
        if r < 0.90:
            return self.codepoints()
        return self.pick([self.pick(INSTITUTIONS), self.pick(WORDS), self.pick(CITIES), self.pick(EMOJI)])


FIXED_SINGLES = (
    ["", " ", "  ", "\t", "\n", "\u00a0", "\u3000", "\u200b", " \t\n\r ", "a", "A", "é", "ß", "İ", "ı", "ǅ",
     "東", "ア", "ｱ", "한", "ب", "א", "क", "ก", "😀", "👩‍🔬", "🇯🇵", "\u0301", "x\u0301\u0302\u0303",
     "Dept. of Physics, Univ. of Tokyo, Japan", "  leading and trailing spaces  ", "multiple    inner     spaces",
     "tab\tseparated\tvalues", "line\nbreaks\r\nand\rreturns", "NBSP\u00a0between\u00a0words",
     "zero\u200bwidth\u200djoiners\u200c", "bom\ufeffinside", "U+2028\u2028and U+2029\u2029and NEL\u0085",
     "ＵＮＩＶＥＲＳＩＴＹ ｏｆ ＴＯＫＹＯ", "㈱日立製作所", "ﬁﬂﬃ ligatures", "Ⅰ Ⅱ Ⅲ Ⅳ ①②③", "ｶﾀｶﾅ ﾊﾝｶｸ ﾃﾞｽ",
     "Ångström Å", "Ωmega Ω", "µm μm", "x² + y³", "½ ¼ ¾", "!!!???...,,,;;;", "((([[[{{{}}}]]])))", "-----",
     "……", "“quoted” «guillemets» „low“", "123 456 7890", "٠١٢٣٤٥٦٧٨٩", "०१२३४५६७८९", "〇一二三",
     "<s>", "</s>", "<mask>", "<pad>", "<unk>", "<s>University</s>", "University <mask> Tokyo",
     "a<mask>b", "<mask><mask><mask>", "text with </s> inside", "\x00", "\x07bell", "\x7fdel",
     "rtl \u202eoverride\u202c", "מימין לשמאל 123 abc", "عربي مع English و ١٢٣", "Ελληνικά ΚΕΦΑΛΑΙΑ τελικό ς",
     "Кириллица ЁЁ ёё Її Ґґ", "中文、日本語、한국어。", "ภาษาไทยไม่มีช่องว่าง", "देवनागरी में पाठ",
     "Tiếng Việt có dấu", "Türkçe İıŞşĞğ", "Ǆǅǆ Ǳǲǳ", "\U0001F600" * 20, "a" * 300, "ab " * 200, "東" * 300]
)


# --------------------------------------------------------------------------------------
# Pairs and truncation
# --------------------------------------------------------------------------------------


def pick_max_length(gen, nq, nd):
    """A max_length for a pair of untruncated lengths nq, nd, spread over the cases of
    `longest_first`: none, no cut, only the longer side cut, both cut, tiny."""
    total = nq + nd + 4
    lo, hi = min(nq, nd), max(nq, nd)
    r = gen.rng.random()
    if r < 0.2:
        return None, "none"
    if r < 0.3:
        return int(gen.rng.integers(total, total + 50)), "no-cut"
    if r < 0.55 and hi > lo and nq + nd > 2 * lo + 1:
        # budget in (2*lo, nq+nd): only the longer side loses tokens
        budget = int(gen.rng.integers(2 * lo + 1, nq + nd))
        return budget + 4, "longer-only"
    if r < 0.8 and lo >= 1:
        budget = int(gen.rng.integers(0, 2 * lo))
        return budget + 4, "both"
    return int(gen.rng.integers(4, 13)), "tiny"


def dumps(obj):
    """One JSON line; line/paragraph separators escaped so no reader splits the line."""
    s = json.dumps(obj, ensure_ascii=False)
    return s.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").replace("\u0085", "\\u0085")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokenizer", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--singles", type=int, default=2400)
    ap.add_argument("--pairs", type=int, default=2400)
    args = ap.parse_args()

    tok = ref.load_tokenizer(args.tokenizer)  # no truncation, no padding
    gen = Gen(args.seed)

    singles = list(FIXED_SINGLES)
    for n_chars in (2000, 5000, 12000, 20000):  # very long strings
        singles.append(gen.long_text(n_chars))
    while len(singles) < args.singles:
        singles.append(gen.text())

    lines = []
    for s in singles:
        lines.append(dumps({"kind": "single", "text": s, "ids": tok.encode(s, add_special_tokens=False).ids}))

    def length(s):
        return len(tok.encode(s, add_special_tokens=False).ids)

    cut_counts = Counter()
    pairs = []
    # Fixed pairs first: empty sides, special literals, a long pair cut at typical limits.
    long_q, long_d = gen.long_text(3000), gen.long_text(9000)
    for q, d, n in [("", "", None), ("", "University of Tokyo", None), ("Univ. of Tokyo", "", None),
                    ("", "", 4), ("", "University of Tokyo", 5), ("<s>", "</s>", None),
                    ("a<mask>b", "<mask>", 8), (long_q, long_d, None), (long_q, long_d, 512),
                    (long_q, long_d, 2048), (long_q, long_d, 8192), (long_d, "Univ. of Tokyo", 512)]:
        pairs.append((q, d, n, "fixed"))
    while len(pairs) < args.pairs:
        r = gen.rng.random()
        if r < 0.5:  # affiliation vs institution, the reranker's real workload
            q, d = gen.affiliation(), gen.pick(INSTITUTIONS) if gen.chance(0.7) else gen.affiliation()
        elif r < 0.8:
            q, d = gen.text(), gen.text()
        else:  # longer documents so that truncation has room to act
            q, d = gen.text(), gen.long_text(int(gen.rng.integers(100, 1500)))
        n, why = pick_max_length(gen, length(q), length(d))
        pairs.append((q, d, n, why))

    for q, d, n, why in pairs:
        if n is None:
            tok.no_truncation()
        else:
            tok.enable_truncation(n, strategy="longest_first")
        ids = tok.encode(q, d).ids
        cut_counts[why] += 1
        lines.append(dumps({"kind": "pair", "query": q, "document": d, "max_length": n, "ids": ids}))
    tok.no_truncation()

    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines) + "\n"
    args.out.write_text(text, encoding="utf-8")
    n_ids = sum(len(json.loads(line)["ids"]) for line in lines)
    print(f"wrote {args.out}: {len(singles)} singles, {len(pairs)} pairs, {n_ids} ids, "
          f"{len(text.encode('utf-8')) / 1e6:.2f} MB")
    print("pair max_length kinds:", dict(sorted(cut_counts.items())))
    print("longest single: %d chars" % max(len(s) for s in singles))


if __name__ == "__main__":
    main()
