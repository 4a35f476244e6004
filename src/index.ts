/**
 * selectivity-engine: the public library API.
 */
export { createEngine, type Engine, type EngineOptions } from './engine.js';
export { createRuleset, resolveSettings, DEFAULT_SETTINGS, type Ruleset, type RulesetSettings } from './ruleset/ruleset.js';
export { compileRuleset, type CompiledRuleset, type CompiledMeta } from './ruleset/compile.js';
export { Kernel } from './kernel/kernel.js';
export { referenceScore, type ReferenceResult } from './kernel/reference.js';
export type { ScoreResult } from './kernel/layout.js';
export { toDecisions, decisionAt, channelCounts, type Decision, type Reason } from './decisions.js';
export { validateDeclaration, FIELDS, type Declaration, type FieldIssue } from './model/schema.js';
export { BatchBuilder, toBatch, rowOf, CATEGORICAL_COLUMNS, CATEGORICAL_INDEX, type ColumnarBatch } from './model/columnar.js';
export { readDeclarations, type ReadChunk, type RecordError, type ReadOptions } from './model/readers.js';
export { resolveColumns, PRESETS } from './model/columns.js';
export { CHANNELS, type Channel } from './model/channels.js';
export { buildPeerTables, PeerTableBuilder, parseLevels, snapshotTables, isPeerSnapshot, DEFAULT_LEVELS, FEATURES, type PeerTables, type PeerLevel, type PeerSnapshot, type SnapshotInfo } from './peers/peer-groups.js';
export { savePeerSnapshot, loadPeerSnapshot, loadPeerTables, loadPeers, parsePeerTables, parsePeerSnapshot } from './peers/peer-store.js';
export { studyFile, type StudyOptions } from './study/study.js';
export type { StudyReport, StudyDeclaration, StudyGroup, StudyDistribution } from './study/report.js';
export { renderStudyHtml, studyTopCsv, studyGroupsCsv } from './study/render.js';
export { evaluate, type EvaluateOptions, type EvaluationReport } from './evaluate/evaluate.js';
export { topKMetrics } from './evaluate/metrics.js';
export { validateProfile, validateProfiles, type Profile, type ProfileConditions } from './profiles/profile.js';
export { loadProfiles } from './profiles/load.js';
export { scoreFile, type ScoreFileOptions, type ScoreSummary } from './score-file.js';
export { generateDeclarations, writeSynthetic, plantedFrauds } from './generate/synthetic.js';
export { errors, SelectivityError, isSelectivityError, type ErrorCode } from './errors.js';
