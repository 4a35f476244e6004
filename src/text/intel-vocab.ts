/**
 * Built-in vocabularies of `selectivity intel`: modes of transport, countries
 * and the places (ports, hubs, cities) that stand for them, and goods mapped
 * to HS chapters; plus the stopwords of news and seizure reports.
 *
 * The vocabularies match on words folded for the plural only ("containers" →
 * "container", "Philippines" → "philippine"), not on Porter stems: the Porter
 * stem of "container" is that of "containing", and of "ship" that of
 * "shipped". Matching is greedy, longest phrase first, without overlaps, so
 * "Equatorial Guinea" is GQ and not also GN.
 */
import { STOPWORDS, stem } from './tokens.js';

/** Folds a lower-case word for the plural: "parcels" → "parcel", "batteries" → "battery"; other words unchanged. */
export function foldPlural(word: string): string {
  if (word.length > 4 && word.endsWith('ies')) return `${word.slice(0, -3)}y`;
  if (word.length > 3 && word.endsWith('s') && !word.endsWith('ss') && !word.endsWith('us') && !word.endsWith('is')) return word.slice(0, -1);
  return word;
}

/** One phrase found in a token sequence: the entry's key and the tokens [start, end) it covers. */
export interface VocabularyHit { key: string; start: number; end: number }

interface TrieNode { next: Map<string, TrieNode>; key?: string }

/** A phrase vocabulary over plural-folded words, matched greedily (longest phrase first, no overlaps). */
export class Vocabulary {
  private readonly root: TrieNode = { next: new Map() };
  /** Key → display label. */
  readonly labels = new Map<string, string>();

  /** `entries`: key, label, phrases (space-separated words; punctuation splits words as in the texts). */
  constructor(entries: readonly (readonly [key: string, label: string, phrases: readonly string[]])[], split: (text: string) => string[]) {
    for (const [key, label, phrases] of entries) {
      this.labels.set(key, label);
      for (const p of phrases) {
        const ws = split(p).map(foldPlural);
        if (ws.length === 0) continue;
        let node = this.root;
        for (const w of ws) {
          let n = node.next.get(w);
          if (!n) { n = { next: new Map() }; node.next.set(w, n); }
          node = n;
        }
        node.key ??= key; // the first entry to claim a phrase keeps it
      }
    }
  }

  /** The phrases in a sequence of plural-folded words, left to right. */
  find(folded: readonly string[]): VocabularyHit[] {
    const hits: VocabularyHit[] = [];
    let i = 0;
    while (i < folded.length) {
      let node: TrieNode | undefined = this.root;
      let best: VocabularyHit | undefined;
      for (let j = i; j < folded.length; j++) {
        node = node.next.get(folded[j]);
        if (!node) break;
        if (node.key !== undefined) best = { key: node.key, start: i, end: j + 1 };
      }
      if (best) { hits.push(best); i = best.end; } else i++;
    }
    return hits;
  }
}

/** Modes of transport: key, label, phrases. "ship" and "express" alone are left out (verbs in news). */
export const TRANSPORT_MODES: readonly (readonly [string, string, readonly string[]])[] = [
  ['sea', 'sea (container, vessel)', ['container', 'shipping container', 'container ship', 'container vessel', 'container terminal', 'vessel', 'cargo ship',
    'merchant ship', 'bulk carrier', 'tanker', 'reefer', 'seaport', 'sea port', 'sea freight', 'sea cargo', 'by sea', 'maritime', 'bill of lading']],
  ['air', 'air cargo', ['air cargo', 'air freight', 'airfreight', 'air waybill', 'airway bill', 'airport', 'aircraft', 'cargo flight', 'flight', 'airline', 'by air']],
  ['courier', 'courier / express', ['courier', 'express consignment', 'express parcel', 'express delivery', 'express shipment', 'express service',
    'express carrier', 'express operator', 'express mail', 'fast parcel']],
  ['postal', 'postal / parcel', ['postal', 'parcel', 'postal parcel', 'postal service', 'postal item', 'mail item', 'letter post', 'post office', 'small package']],
  ['road', 'road (truck, lorry)', ['truck', 'lorry', 'trailer', 'heavy goods vehicle', 'hgv', 'road freight', 'road transport', 'by road', 'van', 'tir carnet']],
  ['rail', 'rail', ['rail', 'railway', 'train', 'freight train', 'rail freight', 'wagon', 'railcar']],
  ['passenger', 'passenger / baggage', ['passenger', 'air passenger', 'baggage', 'luggage', 'suitcase', 'traveller', 'traveler', 'hand luggage']],
];

/**
 * Countries (ISO 3166-1 alpha-2, name first) and places that stand for them.
 * Names that are common words in this field are left out ("Jordan" sneakers,
 * "Chad", "Jersey", "Georgia", "Man"); "Korea" alone is KR.
 */
const COUNTRY_TABLE = `
AE united arab emirates|uae|emirates|dubai|jebel ali|abu dhabi|sharjah
AF afghanistan
AL albania
AM armenia
AO angola|luanda
AR argentina|buenos aires
AT austria|vienna
AU australia|sydney|melbourne
AZ azerbaijan|baku
BA bosnia and herzegovina|bosnia
BD bangladesh|chittagong|dhaka
BE belgium|antwerp|liege|brussels|zeebrugge
BF burkina faso
BG bulgaria|varna
BH bahrain
BJ benin|cotonou
BO bolivia
BR brazil|sao paulo|paranagua
BS bahamas
BY belarus|minsk
BZ belize
CA canada|vancouver|montreal|toronto
CD democratic republic of the congo|dr congo|drc|kinshasa
CG republic of the congo|congo
CH switzerland|zurich|geneva
CI ivory coast|cote d ivoire|abidjan
CL chile|valparaiso
CM cameroon|douala
CN china|prc|mainland china|shenzhen|shanghai|guangzhou|ningbo|yiwu|xiamen|tianjin|qingdao|beijing|hangzhou
CO colombia|bogota|buenaventura|barranquilla
CR costa rica|puerto limon
CU cuba|havana
CY cyprus|limassol
CZ czech republic|czechia|prague
DE germany|hamburg|bremerhaven|frankfurt|leipzig|berlin|munich
DK denmark|copenhagen|aarhus
DO dominican republic
DZ algeria|algiers
EC ecuador|guayaquil|quito
EE estonia|tallinn
EG egypt|port said|alexandria|cairo
ES spain|valencia|algeciras|barcelona|madrid
ET ethiopia|addis ababa
FI finland|helsinki
FR france|paris|le havre|marseille|charles de gaulle
GA gabon
GB united kingdom|uk|great britain|britain|england|scotland|wales|london|felixstowe|southampton|heathrow|dover
GH ghana|accra
GM gambia
GN guinea|conakry
GQ equatorial guinea
GR greece|piraeus|athens
GT guatemala
GW guinea bissau
GY guyana
HK hong kong
HN honduras
HR croatia|rijeka
HT haiti
HU hungary|budapest
ID indonesia|jakarta|surabaya
IE ireland|dublin
IL israel|haifa
IN india|mumbai|nhava sheva|chennai|delhi|new delhi|kolkata
IQ iraq|basra
IR iran|bandar abbas|tehran
IS iceland
IT italy|genoa|gioia tauro|milan|rome|trieste|naples
JM jamaica|kingston
JP japan|tokyo|yokohama|osaka
KE kenya|mombasa|nairobi
KG kyrgyzstan
KH cambodia|phnom penh
KP north korea|dprk
KR south korea|republic of korea|korea|busan|seoul|incheon
KW kuwait
KZ kazakhstan|almaty
LA laos|lao
LB lebanon|beirut
LK sri lanka|colombo
LT lithuania|klaipeda|vilnius
LU luxembourg
LV latvia|riga
LY libya|tripoli|benghazi
MA morocco|tangier|tanger med|casablanca
MD moldova
ME montenegro
MG madagascar
MK north macedonia|macedonia
ML mali
MM myanmar|burma|yangon
MN mongolia
MO macau|macao
MR mauritania
MT malta|marsaxlokk
MU mauritius
MW malawi
MX mexico|manzanillo|mexico city
MY malaysia|port klang|kuala lumpur|penang
MZ mozambique|maputo
NA namibia|walvis bay
NE niger
NG nigeria|lagos|apapa
NI nicaragua
NL netherlands|holland|rotterdam|amsterdam|schiphol
NO norway|oslo
NP nepal
NZ new zealand|auckland
OM oman|salalah|muscat
PA panama|colon free zone
PE peru|callao|lima
PG papua new guinea
PH philippines|manila
PK pakistan|karachi|lahore
PL poland|gdansk|warsaw
PT portugal|lisbon|sines
PY paraguay|ciudad del este
QA qatar|doha
RO romania|constanta|bucharest
RS serbia|belgrade
RU russia|russian federation|moscow|saint petersburg|st petersburg|vladivostok
RW rwanda
SA saudi arabia|jeddah|riyadh|dammam
SD sudan|port sudan
SE sweden|stockholm|gothenburg
SG singapore
SI slovenia|koper
SK slovakia|bratislava
SL sierra leone|freetown
SN senegal|dakar
SO somalia|mogadishu
SR suriname|paramaribo
SS south sudan
SV el salvador
SY syria|latakia|damascus
TG togo|lome
TH thailand|bangkok|laem chabang
TJ tajikistan
TM turkmenistan
TN tunisia|tunis
TR turkey|turkiye|istanbul|mersin|izmir|ankara
TT trinidad and tobago|trinidad
TW taiwan|kaohsiung|taipei
TZ tanzania|dar es salaam|zanzibar
UA ukraine|odesa|odessa|kyiv|kiev
UG uganda|kampala
US united states|united states of america|usa|new york|los angeles|long beach|miami|houston|chicago|new jersey
UY uruguay|montevideo
UZ uzbekistan|tashkent
VE venezuela|caracas|puerto cabello
VN vietnam|viet nam|ho chi minh city|hanoi|haiphong
YE yemen|aden
ZA south africa|durban|johannesburg|cape town
ZM zambia|lusaka
ZW zimbabwe|harare
`;

const titleCase = (s: string) => s.replace(/\b\p{L}/gu, (c) => c.toUpperCase()).replace(/\b(And|Of|The)\b/g, (w) => w.toLowerCase());

const UPPER_NAMES: Record<string, string> = { uae: 'UAE', uk: 'UK', usa: 'USA', prc: 'PRC', drc: 'DRC', dprk: 'DPRK' };

/** Countries: [ISO alpha-2, label, names and places]. */
export const COUNTRIES: readonly (readonly [string, string, readonly string[]])[] = COUNTRY_TABLE.trim().split('\n').map((line) => {
  const code = line.slice(0, 2);
  const names = line.slice(3).split('|');
  return [code, UPPER_NAMES[names[0]] ?? titleCase(names[0]), names] as const;
});

/** HS chapters: [chapter, label, goods words and phrases]. Narcotics are listed under 29 (alkaloids) and cannabis under 12. */
export const GOODS: readonly (readonly [string, string, readonly string[]])[] = [
  ['02', 'HS 02 meat', ['meat', 'beef', 'pork', 'poultry', 'chicken meat']],
  ['03', 'HS 03 fish and seafood', ['fish', 'seafood', 'shrimp', 'prawn', 'glass eel', 'eel', 'shark fin', 'sea cucumber', 'abalone']],
  ['05', 'HS 05 animal products (ivory, horn, scales)', ['ivory', 'rhino horn', 'rhinoceros horn', 'pangolin scale', 'elephant tusk', 'tusk']],
  ['08', 'HS 08 fruit and nuts', ['fruit', 'banana', 'avocado', 'pineapple']],
  ['09', 'HS 09 coffee, tea, spices', ['coffee', 'tea', 'spice', 'saffron']],
  ['12', 'HS 12 plants (cannabis, khat)', ['cannabis', 'marijuana', 'khat', 'hemp']],
  ['22', 'HS 22 beverages and spirits', ['alcohol', 'vodka', 'whisky', 'whiskey', 'wine', 'beer', 'liquor', 'spirits']],
  ['24', 'HS 24 tobacco and cigarettes', ['cigarette', 'tobacco', 'cigar', 'shisha', 'hookah']],
  ['27', 'HS 27 mineral fuels', ['fuel', 'diesel', 'petrol', 'gasoline', 'crude oil']],
  ['29', 'HS 29 organic chemicals, precursors, alkaloids', ['chemical', 'precursor chemical', 'ephedrine', 'pseudoephedrine', 'safrole', 'methylamine', 'acetone',
    'pmk', 'bmk', 'apaan', 'fentanyl', 'cocaine', 'heroin', 'methamphetamine', 'amphetamine', 'mdma', 'ketamine', 'tramadol']],
  ['30', 'HS 30 pharmaceutical products', ['medicine', 'medicament', 'pharmaceutical', 'pill', 'capsule', 'vaccine', 'antibiotic', 'painkiller', 'steroid', 'anabolic steroid']],
  ['33', 'HS 33 perfumery and cosmetics', ['cosmetic', 'perfume', 'fragrance', 'shampoo', 'lipstick', 'skin cream', 'makeup']],
  ['42', 'HS 42 handbags and leather goods', ['handbag', 'purse', 'wallet', 'leather good', 'designer bag']],
  ['44', 'HS 44 wood and timber', ['timber', 'wood', 'rosewood', 'log']],
  ['61', 'HS 61 knitted apparel', ['t shirt', 'tshirt', 'jersey', 'sportswear', 'sweater', 'hoodie']],
  ['62', 'HS 62 apparel, not knitted', ['clothing', 'clothes', 'garment', 'apparel', 'jeans', 'jacket', 'shirt', 'dress']],
  ['64', 'HS 64 footwear', ['shoe', 'sneaker', 'footwear', 'sports shoe', 'sandal']],
  ['71', 'HS 71 jewellery, gold, precious stones', ['jewellery', 'jewelry', 'gold', 'diamond', 'gemstone', 'gold bar']],
  ['84', 'HS 84 machinery and computers', ['laptop', 'computer', 'printer', 'server']],
  ['85', 'HS 85 electrical equipment and electronics', ['battery', 'power bank', 'phone', 'smartphone', 'mobile phone', 'charger', 'headphone', 'earphone',
    'electronics', 'electronic device', 'vape', 'e cigarette', 'lithium battery', 'solar panel']],
  ['87', 'HS 87 vehicles and parts', ['car', 'motorcycle', 'car part', 'auto part', 'scooter']],
  ['90', 'HS 90 optical and medical instruments', ['sunglasses', 'contact lens', 'medical device', 'syringe']],
  ['91', 'HS 91 clocks and watches', ['watch', 'wristwatch', 'clock', 'luxury watch']],
  ['93', 'HS 93 arms and ammunition', ['firearm', 'gun', 'pistol', 'rifle', 'ammunition', 'weapon', 'handgun']],
  ['95', 'HS 95 toys and games', ['toy', 'doll', 'game console', 'video game']],
  ['97', 'HS 97 works of art and antiques', ['antique', 'antiquity', 'artefact', 'artifact', 'cultural property']],
];

/** Function words of English news text, and words every seizure report uses (customs, officers, seized…). */
const NEWS_STOPWORDS = `
a about above across after again against all almost along already also although always am among an and another any anyone anything are around as at
back be became because become been before being below between both but by can cannot could did do does doing done down during each either else
even ever every few for found from further get got had has have having he her here hers him his how however i if in into is it its itself just last
least less like made make many may me might more most much must my near neither never new next no nor not now of off often on once one only or other
our out over own per perhaps put rather really same she should since so some still such than that the their them then there these they this those
though through thus to too toward towards under until up upon us very via was we well were what when where whether which while who whom whose why
will with within without would yet you your
said says say saying told according reported reports report news press release statement spokesperson spokesman spokeswoman added
today yesterday week weeks month months year years day days time times recent recently earlier later early late ago since
monday tuesday wednesday thursday friday saturday sunday january february march april may june july august september october november december
two three four five six seven eight nine ten eleven twelve hundred hundreds thousand thousands million millions billion
percent cent around approximately estimated total worth value
customs officer officers official officials authority authorities agency administration service services department ministry
seized seizure seizures seize seizing intercepted intercept interception found discovered detected revealed
shipment shipments consignment consignments cargo goods item items piece pieces unit units kg kilogram kilograms tonne tonnes ton tons
declared declare declaring carried carry carrying held hold holding sent send sending arrived arriving came come coming contained containing
showed shown examined opened took taken gave given called went
`;

/** Stems that never make a frequent term: the goods-description stopwords plus NEWS_STOPWORDS. */
export const INTEL_STOPWORDS: ReadonlySet<string> = new Set([...STOPWORDS, ...NEWS_STOPWORDS.trim().split(/\s+/).map((w) => stem(w))]);
