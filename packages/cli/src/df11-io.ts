// The DF11 checkpoint layout helpers live in @df11/models; re-exported for the CLI's modules.
export { bytesOf, compressedModulesOf, isModuleTensor, moduleTensors, readDF11Module } from "@df11/models";
