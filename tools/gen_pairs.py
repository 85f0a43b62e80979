"""Synthetic affiliation-matching pairs for benchmarks.

Each pair is what the affiliations reranker scores in production: a raw affiliation string
as printed in a paper (query) and a candidate institution name (document). Strings are
generated from templates in many languages and scripts, with abbreviations, street
addresses, postcodes, e-mail addresses and typos. Most pairs are short (mean around 40
tokens with the XLM-R pair template), about 1% are long author lists with many
affiliations (up to roughly 500 tokens), so a benchmark sees a realistic length tail.

Usage:

    python tools/gen_pairs.py --n 100000 --seed 0 --out pairs.jsonl [--tokenizer PATH] [--format jsonl|tsv]

JSONL lines: {"id": "p000001", "query": ..., "document": ...}
TSV lines:   id<TAB>query<TAB>document (no header; generated strings never hold tabs or newlines)
With --tokenizer, prints pair token-length stats (pair template incl. the 4 special tokens).

Requirements:

    pip install torch transformers==5.24.0 tokenizers safetensors numpy
    (only numpy, and tokenizers for --tokenizer, are used here)
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

# city, country, local-language code, local city name, postcode pattern (9 = digit, A = letter)
CITIES = [
    ("Tokyo", "Japan", "ja", "東京", "999-9999"), ("Kyoto", "Japan", "ja", "京都", "999-9999"),
    ("Osaka", "Japan", "ja", "大阪", "999-9999"), ("Beijing", "China", "zh", "北京", "999999"),
    ("Shanghai", "China", "zh", "上海", "999999"), ("Wuhan", "China", "zh", "武汉", "999999"),
    ("Hong Kong", "China", "zh", "香港", ""), ("Taipei", "Taiwan", "zh", "臺北", "999"),
    ("Seoul", "South Korea", "ko", "서울", "99999"), ("Daejeon", "South Korea", "ko", "대전", "99999"),
    ("Moscow", "Russia", "ru", "Москва", "999999"), ("Novosibirsk", "Russia", "ru", "Новосибирск", "999999"),
    ("Kyiv", "Ukraine", "uk", "Київ", "99999"), ("Paris", "France", "fr", "Paris", "99999"),
    ("Lyon", "France", "fr", "Lyon", "99999"), ("Grenoble", "France", "fr", "Grenoble", "99999"),
    ("Berlin", "Germany", "de", "Berlin", "99999"), ("Munich", "Germany", "de", "München", "99999"),
    ("Heidelberg", "Germany", "de", "Heidelberg", "99999"), ("Zurich", "Switzerland", "de", "Zürich", "9999"),
    ("Geneva", "Switzerland", "fr", "Genève", "9999"), ("Vienna", "Austria", "de", "Wien", "9999"),
    ("Madrid", "Spain", "es", "Madrid", "99999"), ("Barcelona", "Spain", "es", "Barcelona", "99999"),
    ("Mexico City", "Mexico", "es", "Ciudad de México", "99999"), ("Bogota", "Colombia", "es", "Bogotá", "999999"),
    ("Buenos Aires", "Argentina", "es", "Buenos Aires", "A9999AAA"), ("Sao Paulo", "Brazil", "pt", "São Paulo", "99999-999"),
    ("Lisbon", "Portugal", "pt", "Lisboa", "9999-999"), ("Rome", "Italy", "it", "Roma", "99999"),
    ("Milan", "Italy", "it", "Milano", "99999"), ("Amsterdam", "Netherlands", "nl", "Amsterdam", "9999 AA"),
    ("Leuven", "Belgium", "nl", "Leuven", "9999"), ("Stockholm", "Sweden", "sv", "Stockholm", "999 99"),
    ("Copenhagen", "Denmark", "da", "København", "9999"), ("Oslo", "Norway", "no", "Oslo", "9999"),
    ("Helsinki", "Finland", "fi", "Helsinki", "99999"), ("Warsaw", "Poland", "pl", "Warszawa", "99-999"),
    ("Krakow", "Poland", "pl", "Kraków", "99-999"), ("Prague", "Czech Republic", "cs", "Praha", "999 99"),
    ("Budapest", "Hungary", "hu", "Budapest", "9999"), ("Athens", "Greece", "el", "Αθήνα", "999 99"),
    ("Istanbul", "Turkey", "tr", "İstanbul", "99999"), ("Tehran", "Iran", "fa", "تهران", "99999-99999"),
    ("Cairo", "Egypt", "ar", "القاهرة", "99999"), ("Riyadh", "Saudi Arabia", "ar", "الرياض", "99999"),
    ("Jerusalem", "Israel", "he", "ירושלים", "9999999"), ("Tel Aviv", "Israel", "he", "תל אביב", "9999999"),
    ("New Delhi", "India", "hi", "नई दिल्ली", "999999"), ("Bangalore", "India", "hi", "बेंगलुरु", "999999"),
    ("Bangkok", "Thailand", "th", "กรุงเทพมหานคร", "99999"), ("Hanoi", "Vietnam", "vi", "Hà Nội", "999999"),
    ("Singapore", "Singapore", "en", "Singapore", "999999"), ("Sydney", "Australia", "en", "Sydney", "9999"),
    ("Toronto", "Canada", "en", "Toronto", "A9A 9A9"), ("Montreal", "Canada", "fr", "Montréal", "A9A 9A9"),
    ("Boston", "USA", "en", "Boston", "99999"), ("Stanford", "USA", "en", "Stanford", "99999"),
    ("Chicago", "USA", "en", "Chicago", "99999"), ("London", "UK", "en", "London", "AA9 9AA"),
    ("Cambridge", "UK", "en", "Cambridge", "AA9 9AA"), ("Edinburgh", "UK", "en", "Edinburgh", "AA9 9AA"),
    ("Nairobi", "Kenya", "en", "Nairobi", "99999"), ("Lagos", "Nigeria", "en", "Lagos", "999999"),
]

COUNTRY_LOCAL = {
    "Japan": ["日本", "JAPAN", "Jpn"], "China": ["中国", "P.R. China", "PR China", "People's Republic of China"],
    "South Korea": ["Korea", "Republic of Korea", "대한민국"], "Russia": ["Russian Federation", "Россия"],
    "Ukraine": ["Україна"], "Germany": ["Deutschland", "FRG"], "Switzerland": ["Schweiz", "Suisse"],
    "Spain": ["España"], "Mexico": ["México"], "Brazil": ["Brasil"], "Italy": ["Italia"], "Greece": ["Ελλάδα"],
    "Turkey": ["Türkiye"], "Iran": ["ایران"], "Egypt": ["مصر"], "Saudi Arabia": ["KSA", "المملكة العربية السعودية"],
    "Israel": ["ישראל"], "India": ["भारत"], "Thailand": ["ประเทศไทย"], "Vietnam": ["Việt Nam"],
    "USA": ["United States", "U.S.A.", "United States of America"], "UK": ["United Kingdom", "U.K.", "England"],
    "Netherlands": ["The Netherlands", "Nederland"], "Czech Republic": ["Czechia", "Česká republika"],
    "Poland": ["Polska"], "Sweden": ["Sverige"], "Denmark": ["Danmark"], "Norway": ["Norge"], "Finland": ["Suomi"],
    "Hungary": ["Magyarország"], "Austria": ["Österreich"], "France": ["FRANCE"], "Taiwan": ["Taiwan, ROC", "臺灣"],
}

FIELDS = [
    "Physics", "Chemistry", "Biology", "Mathematics", "Computer Science", "Electrical Engineering",
    "Mechanical Engineering", "Civil Engineering", "Materials Science", "Medicine", "Internal Medicine",
    "Cardiology", "Oncology", "Neurology", "Pediatrics", "Radiology", "Surgery", "Psychiatry", "Public Health",
    "Epidemiology", "Economics", "Sociology", "Psychology", "Linguistics", "History", "Philosophy", "Law",
    "Earth Sciences", "Astronomy", "Molecular Biology", "Biochemistry", "Pharmacology", "Nursing",
    "Environmental Science", "Statistics", "Chemical Engineering", "Agricultural Sciences", "Veterinary Medicine",
]

# Field names in some languages (index-aligned with the first entries of FIELDS).
FIELDS_LOCAL = {
    "fr": ["Physique", "Chimie", "Biologie", "Mathématiques", "Informatique", "Génie Électrique", "Génie Mécanique",
           "Génie Civil", "Science des Matériaux", "Médecine"],
    "de": ["Physik", "Chemie", "Biologie", "Mathematik", "Informatik", "Elektrotechnik", "Maschinenbau",
           "Bauingenieurwesen", "Materialwissenschaft", "Medizin"],
    "es": ["Física", "Química", "Biología", "Matemáticas", "Ciencias de la Computación", "Ingeniería Eléctrica",
           "Ingeniería Mecánica", "Ingeniería Civil", "Ciencia de Materiales", "Medicina"],
    "pt": ["Física", "Química", "Biologia", "Matemática", "Ciência da Computação", "Engenharia Elétrica",
           "Engenharia Mecânica", "Engenharia Civil", "Ciência dos Materiais", "Medicina"],
    "it": ["Fisica", "Chimica", "Biologia", "Matematica", "Informatica", "Ingegneria Elettrica",
           "Ingegneria Meccanica", "Ingegneria Civile", "Scienza dei Materiali", "Medicina"],
    "ru": ["физики", "химии", "биологии", "математики", "информатики", "электротехники", "механики",
           "строительства", "материаловедения", "медицины"],
    "zh": ["物理", "化学", "生物", "数学", "计算机科学", "电气工程", "机械工程", "土木工程", "材料科学", "医学"],
    "ja": ["物理学", "化学", "生物学", "数学", "情報科学", "電気工学", "機械工学", "土木工学", "材料科学", "医学"],
    "ko": ["물리학", "화학", "생물학", "수학", "컴퓨터공학", "전기공학", "기계공학", "토목공학", "재료공학", "의학"],
}

DEPT_EN = ["Department of {f}", "Dept. of {f}", "Dept of {f}", "School of {f}", "Faculty of {f}",
           "Division of {f}", "Laboratory of {f}", "Institute of {f}", "Center for {f}", "{f} Department",
           "Graduate School of {f}", "Section of {f}", "Unit of {f}", "{f} Research Group"]
DEPT_LOCAL = {
    "fr": ["Département de {f}", "Laboratoire de {f}", "Institut de {f}", "UFR de {f}", "Service de {f}"],
    "de": ["Institut für {f}", "Lehrstuhl für {f}", "Fakultät für {f}", "Abteilung {f}", "Klinik für {f}"],
    "es": ["Departamento de {f}", "Facultad de {f}", "Instituto de {f}", "Servicio de {f}"],
    "pt": ["Departamento de {f}", "Faculdade de {f}", "Instituto de {f}"],
    "it": ["Dipartimento di {f}", "Istituto di {f}", "Facoltà di {f}"],
    "ru": ["Кафедра {f}", "Институт {f}", "Факультет {f}", "Лаборатория {f}"],
    "zh": ["{f}系", "{f}学院", "{f}研究所", "{f}重点实验室"],
    "ja": ["{f}専攻", "{f}研究科", "{f}教室", "{f}講座"],
    "ko": ["{f}과", "{f}부", "{f}연구소"],
}

INST_EN = ["University of {c}", "{c} University", "{c} Institute of Technology", "{c} Medical Center",
           "{c} General Hospital", "{c} University Hospital", "National University of {c}", "{c} State University",
           "{c} Polytechnic", "{c} Cancer Center", "{c} Children's Hospital", "Technical University of {c}",
           "{c} College of Medicine", "{c} Institute for Advanced Study", "{c} Research Institute"]
INST_LOCAL = {
    "fr": ["Université de {c}", "Université {c} Cité", "Hôpital Universitaire de {c}", "École Polytechnique de {c}",
           "Centre Hospitalier Universitaire de {c}", "Institut Pasteur de {c}"],
    "de": ["Universität {c}", "Technische Universität {c}", "Universitätsklinikum {c}", "Hochschule {c}",
           "Ludwig-Maximilians-Universität {c}", "Max-Planck-Institut {c}"],
    "es": ["Universidad de {c}", "Universidad Nacional de {c}", "Hospital Universitario de {c}",
           "Universidad Politécnica de {c}", "Instituto Tecnológico de {c}"],
    "pt": ["Universidade de {c}", "Universidade Federal de {c}", "Hospital das Clínicas de {c}"],
    "it": ["Università di {c}", "Università degli Studi di {c}", "Politecnico di {c}", "Ospedale di {c}"],
    "nl": ["Universiteit van {c}", "Vrije Universiteit {c}", "Universitair Medisch Centrum {c}"],
    "sv": ["{c} universitet", "Kungliga Tekniska högskolan {c}"], "da": ["{c} Universitet"],
    "no": ["Universitetet i {c}"], "fi": ["{c}n yliopisto"], "pl": ["Uniwersytet {c}", "Politechnika {c}"],
    "cs": ["Univerzita {c}", "České vysoké učení technické v {c}"], "hu": ["{c}i Tudományegyetem"],
    "el": ["Πανεπιστήμιο {c}", "Εθνικό Μετσόβιο Πολυτεχνείο {c}"], "tr": ["{c} Üniversitesi", "{c} Teknik Üniversitesi"],
    "fa": ["دانشگاه {c}", "دانشگاه علوم پزشکی {c}"], "ar": ["جامعة {c}", "مستشفى {c} الجامعي"],
    "he": ["אוניברסיטת {c}", "המרכז הרפואי {c}"], "hi": ["{c} विश्वविद्यालय", "भारतीय प्रौद्योगिकी संस्थान {c}"],
    "th": ["มหาวิทยาลัย{c}", "โรงพยาบาล{c}"], "vi": ["Đại học {c}", "Bệnh viện {c}"],
    "ru": ["{c}ский государственный университет", "Университет {c}"], "uk": ["Університет {c}"],
    "zh": ["{c}大学", "{c}理工大学", "{c}医院", "中国科学院{c}分院"], "ja": ["{c}大学", "{c}工業大学", "{c}大学医学部附属病院"],
    "ko": ["{c}대학교", "{c}과학기술원", "{c}대학교병원"],
}

COMPANIES = ["Siemens AG", "Google LLC", "Microsoft Research", "IBM Research", "Samsung Electronics Co., Ltd.",
             "Novartis Pharma AG", "Roche Diagnostics GmbH", "Toyota Central R&D Labs., Inc.", "Huawei Technologies Co., Ltd.",
             "Nokia Bell Labs", "Philips Research", "Pfizer Inc.", "株式会社日立製作所", "NTT Communication Science Laboratories",
             "Sanofi R&D", "AstraZeneca", "Bosch Center for Artificial Intelligence", "Alibaba DAMO Academy", "Meta AI"]

STREETS = ["Main Street", "Hongo", "rue du Docteur Roux", "Hauptstraße", "Via Celoria", "Calle Mayor",
           "Avenida Paulista", "ul. Pasteura", "Ленинский проспект", "Haidian District", "Bunkyo-ku", "Gwanak-ro",
           "Boulevard Saint-Michel", "Universitätsstraße", "Campus Drive", "Science Park", "Oxford Road",
           "Av. Universidad", "Rämistrasse", "Nørregade", "Yliopistonkatu", "Karlovo náměstí", "Πανεπιστημίου"]

ABBREV = [("University", "Univ."), ("Department", "Dept."), ("Institute", "Inst."), ("Laboratory", "Lab."),
          ("Hospital", "Hosp."), ("National", "Natl."), ("Science", "Sci."), ("Technology", "Technol."),
          ("Medicine", "Med."), ("Center", "Ctr."), ("Engineering", "Eng."), ("School", "Sch."),
          ("Research", "Res."), ("International", "Int."), ("Chemistry", "Chem."), ("Physics", "Phys.")]

FIRST = ["j", "m", "a", "s", "y", "k", "l", "p", "h", "t", "w", "x"]
LAST = ["smith", "tanaka", "wang", "li", "kim", "muller", "dubois", "garcia", "rossi", "ivanov", "cohen", "kumar"]


class PairGen:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def chance(self, p):
        return self.rng.random() < p

    def postcode(self, pattern):
        out = []
        for ch in pattern:
            if ch == "9":
                out.append(str(int(self.rng.integers(10))))
            elif ch == "A":
                out.append(chr(ord("A") + int(self.rng.integers(26))))
            else:
                out.append(ch)
        return "".join(out)

    def institution(self, city):
        """(English-style name, local-language name or None) of an institution in ``city``."""
        name_en, _, lang, local, _ = city
        en = self.pick(INST_EN).format(c=name_en)
        loc = self.pick(INST_LOCAL[lang]).format(c=local) if lang in INST_LOCAL else None
        return en, loc

    def department(self, lang):
        i = int(self.rng.integers(len(FIELDS)))
        if lang in DEPT_LOCAL and self.chance(0.5):
            f = FIELDS_LOCAL[lang][i % len(FIELDS_LOCAL[lang])]
            return self.pick(DEPT_LOCAL[lang]).format(f=f)
        return self.pick(DEPT_EN).format(f=FIELDS[i])

    def abbreviate(self, text):
        for full, short in ABBREV:
            if full in text and self.chance(0.5):
                text = text.replace(full, short)
        return text

    def typo(self, text):
        """One random keyboard-style error: drop, double or swap a character."""
        if len(text) < 4:
            return text
        i = int(self.rng.integers(1, len(text) - 2))
        kind = int(self.rng.integers(3))
        if kind == 0:
            return text[:i] + text[i + 1 :]
        if kind == 1:
            return text[:i] + text[i] + text[i:]
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]

    def affiliation(self, city=None):
        """One affiliation line and the institution it belongs to (English name)."""
        city = city or self.pick(CITIES)
        name_en, country, lang, local, pc = city
        inst_en, inst_loc = self.institution(city)
        company = self.chance(0.05)
        if company:
            inst_en = inst_loc = self.pick(COMPANIES)
        use_local = inst_loc is not None and self.chance(0.35)
        parts = []
        if self.chance(0.85) and not company:
            parts.append(self.department(lang if use_local else "en"))
            if self.chance(0.45):
                parts.append(self.department("en"))
        parts.append(inst_loc if use_local else inst_en)
        if self.chance(0.5):
            parts.append(f"{int(self.rng.integers(1, 400))} {self.pick(STREETS)}")
        city_txt = local if (use_local or self.chance(0.2)) else name_en
        if pc and self.chance(0.6):
            code = self.postcode(pc)
            city_txt = f"{code} {city_txt}" if self.chance(0.5) else f"{city_txt} {code}"
        parts.append(city_txt)
        if self.chance(0.85):
            parts.append(self.pick(COUNTRY_LOCAL.get(country, [country])) if self.chance(0.3) else country)
        text = self.pick([", ", ", ", ", ", "; ", " , ", ","]).join(parts)
        if self.chance(0.25):
            text = self.abbreviate(text)
        if self.chance(0.1):
            text += f". Electronic address: {self.pick(FIRST)}.{self.pick(LAST)}@{name_en.lower().replace(' ', '')}.edu"
        if self.chance(0.08):
            text = self.typo(text)
        if self.chance(0.04):
            text = text.upper()
        if self.chance(0.05):
            text = f"{int(self.rng.integers(1, 12))} " + text  # affiliation footnote marker
        return text, (inst_en, inst_loc, city)

    def document(self, truth):
        """Candidate institution name: the true one (in some form) or a distractor."""
        inst_en, inst_loc, city = truth
        r = self.rng.random()
        if r < 0.45:
            doc = inst_loc if inst_loc and self.chance(0.25) else inst_en
        elif r < 0.70:  # same city, other institution: the hard negatives
            doc = self.institution(city)[0]
        else:
            doc = self.institution(self.pick(CITIES))[0]
        if self.chance(0.3):
            doc = f"{doc} ({city[0]})" if self.chance(0.5) else f"{doc}, {city[1]}"
        return doc

    def pair(self):
        r = self.rng.random()
        if r < 0.012:  # long author lists: many affiliations in one string
            n = int(self.rng.integers(5, 19))
            lines = [self.affiliation() for _ in range(n)]
            sep = self.pick(["; ", "; ", " | ", ". "])
            numbered = self.chance(0.5)
            query = sep.join(f"{i + 1} {t}" if numbered else t for i, (t, _) in enumerate(lines))
            truth = lines[int(self.rng.integers(n))][1]
        elif r < 0.14:  # two or three affiliations
            lines = [self.affiliation() for _ in range(int(self.rng.integers(2, 4)))]
            query = "; ".join(t for t, _ in lines)
            truth = lines[0][1]
        else:
            query, truth = self.affiliation()
        return query, self.document(truth)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--format", choices=["jsonl", "tsv"], default="jsonl")
    ap.add_argument("--tokenizer", type=Path, default=None, help="tokenizer.json for token-length stats")
    args = ap.parse_args()

    gen = PairGen(args.seed)
    pairs = [gen.pair() for _ in range(args.n)]
    width = max(6, len(str(args.n)))
    with open(args.out, "w", encoding="utf-8") as f:
        for i, (q, d) in enumerate(pairs, 1):
            pid = f"p{i:0{width}d}"
            if args.format == "jsonl":
                f.write(json.dumps({"id": pid, "query": q, "document": d}, ensure_ascii=False) + "\n")
            else:
                assert "\t" not in q + d and "\n" not in q + d
                f.write(f"{pid}\t{q}\t{d}\n")
    print(f"wrote {len(pairs)} pairs to {args.out} ({args.format})")

    if args.tokenizer:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(args.tokenizer))
        tok.no_truncation()
        tok.no_padding()
        lengths = np.array([len(e.ids) for e in tok.encode_batch(pairs)])
        p50, p90, p99, p999 = np.percentile(lengths, [50, 90, 99, 99.9])
        print(f"pair tokens (incl. 4 special): mean {lengths.mean():.1f}, p50 {p50:.0f}, p90 {p90:.0f}, "
              f"p99 {p99:.0f}, p99.9 {p999:.0f}, max {lengths.max()}, total {lengths.sum():,}")
        print(f"pairs over 128 tokens: {(lengths > 128).mean() * 100:.2f}%, over 256: {(lengths > 256).mean() * 100:.2f}%, "
              f"over 512: {(lengths > 512).mean() * 100:.2f}%")


if __name__ == "__main__":
    sys.exit(main())
