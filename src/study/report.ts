/**
 * The shape of a deviation study report: what `selectivity study`, the
 * library's runStudy() and the service's POST /v1/studies return, and what
 * the CSV and HTML writers render. Numbers that are undefined (a feature a
 * declaration lacks, a group without a value) are null, never NaN, so that
 * the report is plain JSON.
 */
import type { Feature } from '../peers/peer-groups.js';

/** One feature of one declaration, against the peer group the kernel used for it. */
export interface StudyFeature {
  feature: Feature;
  /** The declaration's value in natural units (unit value per kg, kg, value per item). */
  value: number | null;
  /** Robust z: (ln value − group median) / spread. Negative = below the peers. */
  z: number | null;
  /** Level name of the group used (e.g. "hs6,origin"), null when no group qualified. */
  peerLevel: string | null;
  /** Key of the group used within its level (e.g. "845210|CN"). */
  peerKey: string | null;
  /** Values of this feature in the group (the n the kernel compared with minGroupSize). */
  peerCount: number | null;
  /** The group's median in natural units (exp of the median of the logs). */
  median: number | null;
  /** Robust spread in log units: max(1.4826 · MAD, madFloor). */
  spread: number | null;
  /** The group's range of typical values in natural units: median · exp(∓ zThreshold · spread). */
  typicalLow: number | null;
  typicalHigh: number | null;
}

export interface StudyDeclaration {
  /** 1-based rank by deviation. */
  rank: number;
  id: string;
  date: string;
  hs: string;
  origin: string;
  importer: string;
  customsValue: number;
  netMass: number;
  quantity: number | null;
  /** The ranking measure (see StudyReport.settings.rankBy). */
  deviation: number;
  /** The engine's score for the declaration (deviation components and profiles). */
  score: number;
  /** One entry per feature, in FEATURES order. */
  features: StudyFeature[];
}

/** A peer group as seen by the study: its statistics and how many studied declarations fell outside it. */
export interface StudyGroup {
  /** Level name, e.g. "hs6,origin". */
  level: string;
  key: string;
  /** Readable form of the key, e.g. "hs6 845210 · origin CN". */
  label: string;
  feature: Feature;
  /** Peer values of the feature in the snapshot (n). */
  size: number;
  /**
   * Statistics of the feature in the snapshot, natural units except spread
   * and std (log units); mean is the geometric mean (e to the mean log).
   */
  median: number | null;
  spread: number | null;
  mean: number | null;
  std: number | null;
  min: number | null;
  max: number | null;
  /** Declarations of the studied file compared with this group. */
  studied: number;
  /** Of those, how many had |z| above the threshold, and how many below / above the peers. */
  outliers: number;
  under: number;
  over: number;
  /** outliers / studied. */
  outlierShare: number;
}

/** Distribution of a feature's peer values in one group (from the snapshot's sketch), with studied declarations marked. */
export interface StudyDistribution {
  level: string;
  key: string;
  label: string;
  feature: Feature;
  /** Histogram over natural-log values: bins [lo, hi) in natural units with their counts. */
  bins: { lo: number; hi: number; count: number }[];
  median: number | null;
  /** Declarations to mark on the plot (value in natural units). */
  marked: { id: string; value: number; z: number | null; rank: number }[];
}

export interface StudyReport {
  generatedAt: string;
  /** The studied file (or "request" for an HTTP body). */
  source: string;
  peers: { version: string; createdAt: string; levels: string[]; rows: number };
  settings: {
    top: number;
    /** "maxAbsZ" (largest |z| of any feature) or a feature name (that feature's z, by direction). */
    rankBy: string;
    direction: 'under' | 'over' | 'both';
    zThreshold: number;
    minGroupSize: number;
    madFloor: number;
  };
  rows: number;
  scored: number;
  invalid: number;
  /** Declarations with at least one feature beyond the threshold. */
  outliers: number;
  seconds: number;
  /** The top declarations, most deviating first. */
  top: StudyDeclaration[];
  /**
   * Groups of the ranking feature (unit value for maxAbsZ) with at least one
   * outlier: those with at least minGroupSize studied declarations first, each
   * part by share of outliers, then count.
   */
  groups: StudyGroup[];
  /** Distributions for the top declarations' groups (the first few, deduplicated). */
  distributions: StudyDistribution[];
}
